"""The trainer (training-only extra: PyTorch): its architecture choice, and
data-parallel training under torchrun with two CPU processes (gloo)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from refcodec import arch as A  # noqa: E402
from refcodec.train import __main__ as T  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")          # kodim23.png: the one training picture
TINY = "8,12,6,8,5,7"


def test_parse_arch():
    a = T.parse_arch("8,12,6,8")
    assert (a["N"], a["M"], a["Z"], a["NH"]) == (8, 12, 6, 8) and not A.has_context(a)
    assert a["version"] == 2
    a = T.parse_arch(TINY + ",1")
    assert a["C"] == 5 and a["NE"] == 7 and a["version"] == 3
    assert [layer[0] for layer in a["g_a"]].count("res") == 3
    for bad in ("8,12,6", "8,12,6,8,5,7,1,9", "8,x,6,8"):
        with pytest.raises(ValueError):
            T.parse_arch(bad)


def test_arch_comes_from_the_init_file(tmp_path):
    """Without --arch, a run takes the architecture of the file it starts from
    (a widened model trains on without its widths repeated)."""
    arch = A.make_arch(N=8, M=16, Z=6, NH=8, C=5, NE=7, RA=1)
    init = tmp_path / "init.npz"
    np.savez(init, __meta__=np.frombuffer(json.dumps({"arch": arch}).encode(), np.uint8))
    args = T.argparse.Namespace(arch=None, run=str(tmp_path / "run"), init=str(init))
    got = T.arch_of_run(args)
    assert got["M"] == 16 and [tuple(x) for x in got["g_a"]] == [tuple(x) for x in arch["g_a"]]
    args.arch = TINY
    assert T.arch_of_run(args)["M"] == 12
    args.arch, args.init = None, None
    assert T.arch_of_run(args)["M"] == int(T.DEFAULT_ARCH.split(",")[1])


def run_trainer(run, *extra, procs=1):
    """The trainer on tiny crops of tests/data, in fresh processes."""
    args = ["--data", DATA, "--run", str(run), "--kodak", str(run / "no-kodak"), "--arch", TINY + ",1",
            "--batch", "2", "--crop", "64", "--threads", "1", "--log-every", "1", *extra]
    if procs == 1:
        cmd = [sys.executable, "-m", "refcodec.train", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
               "-m", "refcodec.train", "--", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return (run / "train.log").read_text()


def test_torchrun_two_cpu_processes(tmp_path):
    """Two processes (gloo): one log, a batch of 2 x 2 crops, gradients
    averaged so both hold the same weights at the end; the checkpoint resumes."""
    run = tmp_path / "ddp"
    log = run_trainer(run, "--iters", "3", procs=2)
    assert "2 processes (gloo), 4 crops per iteration" in log
    assert log.count("step 3 loss") == 1                      # process 0 alone logs
    assert "2 processes agree on the weights (checksum spread 0)" in log
    state = torch.load(run / "last.pt", map_location="cpu")
    assert state["step"] == 3
    init = T.HyperpriorTorch(T.parse_arch(TINY + ",1"))      # the weights moved (any seed's init differs)
    moved = [k for k, v in state["model"].items() if k in init.state_dict()
             and not torch.equal(v, init.state_dict()[k]) and ".conv2." in k]
    assert moved                                              # residual blocks trained off zero
    assert "device cpu, channels-last" in log
    log = run_trainer(run, "--iters", "5", "--memory-format", "contiguous", procs=2)
    assert "resumed" in log and "stopped at step 5" in log     # a channels-last checkpoint, resumed in NCHW
    assert log.count("channels-last") == 1 and "2 processes agree on the weights (checksum spread 0)" in log
    assert torch.load(run / "last.pt", map_location="cpu")["step"] == 5


def test_one_process_trains_and_exports(tmp_path):
    run = tmp_path / "one"
    log = run_trainer(run, "--iters", "2")
    assert "processes" not in log and "stopped at step 2" in log
    from refcodec import nn
    arch, params, meta = nn.load_float(str(run / "last.npz"))
    assert meta["step"] == 2 and arch["M"] == 12
    assert np.isfinite(nn.run_float(arch["g_a"], params, "g_a", np.zeros((64, 64, 3), np.float32))).all()


def test_probe_log_reading(tmp_path):
    """refcodec.studies.probes reads the trainer's log from the run's last start on."""
    from refcodec.studies import probes
    row = "[beta 0.00: 0.016 bpp 21.45 dB] [beta 0.50: 0.247 bpp 28.29 dB] [beta 1.00: 1.207 bpp 34.35 dB]"
    log = tmp_path / "train.log"
    log.write_text(
        "t kodak step 10 score 2.0000 " + row + "\n"
        "t initialised from x.npz (step 100)\n"
        "t step 150 loss 1.5 bpp 0.5 psnr 28 lr 1e-4 (1.0 s/it, cpu 0.010 h)\n"
        "t kodak step 200 score 1.5000 cpu 0.050 h " + row + "\n"
        "t kodak step 400 score 1.4000 cpu 0.150 h " + row + "\n")
    ev = probes.read_log(str(log))
    assert [(s, sc, c) for s, sc, c, _ in ev] == [(200, 1.5, 0.05), (400, 1.4, 0.15)]
    assert ev[0][3] == [(0.0, 0.016, 21.45), (0.5, 0.247, 28.29), (1.0, 1.207, 34.35)]
    assert abs(probes.steps_per_cpu_hour(ev) - 2000) < 1e-6
    vvc = np.array([[0.1, 24.0], [0.3, 28.0], [0.8, 32.0], [1.5, 35.0]])
    same = probes.proxy_bd([(0, b, p) for b, p in vvc], vvc)
    assert abs(same) < 1e-9
    assert probes.proxy_bd([(0, 1.2 * b, p) for b, p in vvc], vvc) > 19.9


def test_profile_runs_its_variants(capsys):
    """refcodec.train.profile: a line per variant with its ratio, and the split by network."""
    from refcodec.train import profile
    profile.main(["--arch", TINY + ",1", "--batch", "1", "--crop", "64", "--threads", "1", "--steps", "1",
                  "--variants", "fp32,fp32-cl", "--split"])
    out = capsys.readouterr().out
    assert "fp32 " in out and "fp32-cl" in out and "x1.00" in out
    for net in ("g_a", "h_a", "h_s", "g_s", "g_cm", "g_ep"):
        assert f"  {net}" in out


def test_profile_of_exported_weights_with_the_encoders_rounding(capsys, tmp_path):
    """profile --init: the architecture of exported float weights, post-filter
    included (its g_pf in the split), with the trainer's --rdoq-ste."""
    from refcodec.train import profile
    arch = A.with_postfilter(T.parse_arch(TINY + ",1"), PF=4)
    w = tmp_path / "tiny-pf.npz"
    T.export_float(T.HyperpriorTorch(arch), str(w), 0, 0.0)
    profile.main(["--init", str(w), "--rdoq-ste", "--batch", "1", "--crop", "64", "--threads", "1", "--steps", "1",
                  "--variants", "fp32-cl", "--split"])
    out = capsys.readouterr().out
    assert "PF=4" in out and "--rdoq-ste" in out and "fp32-cl" in out
    for net in ("g_a", "g_s", "g_pf"):
        assert f"  {net}" in out


def test_weight_average_arithmetic_and_swap():
    """WeightAverage: avg <- d avg + (1 - d) w per update; swapped_in lends the
    average to the model and gives the model its own weights back."""
    m = torch.nn.Linear(3, 2)
    with torch.no_grad():
        m.weight.fill_(1.0)
        m.bias.fill_(0.0)
    ema = T.WeightAverage(m, 0.75)
    with torch.no_grad():
        m.weight.fill_(5.0)
        m.bias.fill_(-4.0)
    ema.update(m)                                  # 0.75 * 1 + 0.25 * 5 = 2; 0.25 * -4 = -1
    assert torch.equal(ema.avg["weight"], torch.full((2, 3), 2.0))
    assert torch.equal(ema.avg["bias"], torch.full((2,), -1.0))
    with ema.swapped_in(m):
        assert torch.equal(m.weight, torch.full((2, 3), 2.0))
    assert torch.equal(m.weight, torch.full((2, 3), 5.0)) and torch.equal(m.bias, torch.full((2,), -4.0))
    again = T.WeightAverage(m, 0.75, state=ema.avg)  # resumed from a checkpoint's average
    assert torch.equal(again.avg["weight"], ema.avg["weight"])


def test_trainer_weight_average_is_what_it_exports(tmp_path):
    """--ema: the checkpoint keeps the average next to the weights, resumes it,
    and last.npz (and --export) hold the average, not the weights."""
    run = tmp_path / "ema"
    log = run_trainer(run, "--iters", "3", "--ema", "0.5")
    assert "weight average: decay 0.5 (from the weights)" in log
    state = torch.load(run / "last.pt", map_location="cpu")
    exported = np.load(run / "last.npz")
    k = "g_s.0.weight" if "g_s.0.weight" in state["ema"] else sorted(state["ema"])[0]
    assert np.array_equal(exported[k], state["ema"][k].numpy())
    assert not torch.equal(state["ema"][k], state["model"][k])
    log = run_trainer(run, "--iters", "4", "--ema", "0.5")
    assert "weight average: decay 0.5 (resumed)" in log
    out = tmp_path / "x.npz"
    run_trainer(run, "--export", str(out))
    assert np.array_equal(np.load(out)[k], torch.load(run / "last.pt", map_location="cpu")["ema"][k].numpy())


def test_rdoq_round_is_the_encoders_rounding_straight_through():
    """rdoq_round: c = 0 rounds to nearest; c > 0 moves a value to the
    cheaper neighbour exactly when (r - q)^2 + c bits(q) says so, so that
    small values at small sigma go to zero; the gradient is the identity."""
    from refcodec.train.nets import gaussian_likelihood, rdoq_round
    g = torch.Generator().manual_seed(0)
    r = (torch.rand(4000, generator=g) - 0.5) * 12
    sigma = torch.rand(4000, generator=g) * 4 + 0.2
    assert torch.equal(rdoq_round(r, sigma, 0.0), torch.round(r))
    q = rdoq_round(r, sigma, 0.05)
    q0 = torch.floor(r)

    def cost(v):
        return (r - v) ** 2 + 0.05 * -torch.log2(gaussian_likelihood(v, sigma).clamp_min(1e-9))
    assert torch.all((q == q0) | (q == q0 + 1))
    assert torch.all(cost(q) <= torch.minimum(cost(q0), cost(q0 + 1)))
    assert (q.abs() < torch.round(r).abs()).sum() > 100 and not (q.abs() > torch.round(r).abs()).any()
    x = r.clone().requires_grad_(True)
    rdoq_round(x, sigma, 0.05).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(r))


def test_rdoq_weights_follow_the_encoder():
    from refcodec.encoder import beta_to_code, rdoq_weight
    betas = torch.tensor([0.0, 0.3, 0.42, 0.5, 0.77, 0.9, 1.0])
    assert T.rdoq_weights(betas).tolist() == pytest.approx([rdoq_weight(beta_to_code(float(b))) for b in betas],
                                                           abs=1e-4)


def test_trainer_with_the_encoders_rounding(tmp_path):
    """--rdoq-ste trains (finite loss, weights move) and evaluates with the encoder's rounding."""
    run = tmp_path / "rdoq"
    (tmp_path / "k").mkdir()
    from PIL import Image
    Image.open(os.path.join(DATA, "kodim23.png")).convert("RGB").crop((0, 0, 64, 64)).save(tmp_path / "k" / "a.png")
    log = run_trainer(run, "--iters", "2", "--rdoq-ste", "--eval-every", "2", "--kodak", str(tmp_path / "k"))
    assert "stopped at step 2" in log and "nan" not in log.split("kodak step 2")[1] and "(--rdoq-ste)" in log
    from refcodec.train.nets import load_float
    weights = os.path.join(DATA, "tiny-pf-float.npz")         # trained: context and post-filter
    model = T.HyperpriorTorch(json.loads(bytes(np.load(weights)["__meta__"]).decode())["arch"])
    load_float(model, weights)
    x = torch.from_numpy(np.asarray(Image.open(os.path.join(DATA, "kodim23.png")).convert("RGB"))[:128, :128]
                         .copy()).permute(2, 0, 1)[None].float() / 255
    b = torch.tensor([0.4])
    with torch.no_grad():
        near = model(x, b, noise=False)
        rdoq = model(x, b, noise=False, rdoq=torch.tensor([0.5]))
    assert float(rdoq[1].sum()) < float(near[1].sum())      # the rates of the rate-aware values are lower


def test_evaluation_records_no_graph():
    """The trainer's Kodak evaluation runs between steps: with autograd on,
    as in the training loop, its forward passes record no graph, and the
    model is back in training mode with its weights untouched."""
    model = T.HyperpriorTorch(T.parse_arch(TINY + ",1"))
    seen = []
    model.register_forward_hook(lambda m, i, o: seen.append((torch.is_grad_enabled(), o[0].requires_grad)))
    before = [p.detach().clone() for p in model.parameters()]
    im = np.random.default_rng(0).integers(0, 256, (64, 128, 3), dtype=np.uint8)
    assert torch.is_grad_enabled()
    rows = T.evaluate(model, [im], [0.3, 0.8], "cpu", rdoq=True)
    assert seen == [(False, False)] * 2 and torch.is_grad_enabled() and model.training
    assert [r[0] for r in rows] == [0.3, 0.8] and all(np.isfinite(r[1:]).all() for r in rows)
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))


def test_log_rd_loss_weighs_each_crop_by_its_own_cost(tmp_path):
    """--loss log-rd: the gradient of each crop's cost is 1 / (B * cost), the
    rd loss's 1 / B divided by the cost; the trainer runs with it and logs it."""
    cost = torch.tensor([0.2, 0.5, 2.0, 4.0], requires_grad=True)
    T.training_loss(cost, "rd").backward()
    assert torch.allclose(cost.grad, torch.full((4,), 0.25))
    cost.grad = None
    T.training_loss(cost, "log-rd").backward()
    assert torch.allclose(cost.grad, 0.25 / cost.detach())
    with pytest.raises(ValueError):
        T.training_loss(cost, "l1")
    init = tmp_path / "init.npz"
    T.export_float(T.HyperpriorTorch(T.parse_arch(TINY + ",1")), str(init), 0, 0.0)
    log = run_trainer(tmp_path / "log", "--iters", "1", "--loss", "log-rd", "--init", str(init))
    assert "(--loss log-rd)" in log and "stopped at step 1" in log
    rd = run_trainer(tmp_path / "rd", "--iters", "1", "--init", str(init))
    first = [g.split("step 1 loss ")[1].split(" lr ")[0] for g in (log, rd)]
    assert first[0] == first[1]            # the same crops, the same logged rd cost (not its log) before any update


def test_trainer_bd_rate_against_reference_weights(tmp_path):
    """--bd-ref: the reference curve is measured once into the run folder;
    weights that barely move from it score a BD-rate of about 0; the
    checkpoint records what its best is the best of."""
    from PIL import Image
    (tmp_path / "k").mkdir()
    im = Image.open(os.path.join(DATA, "kodim23.png")).convert("RGB")
    im.crop((0, 0, 128, 128)).save(tmp_path / "k" / "a.png")
    im.crop((256, 128, 384, 256)).save(tmp_path / "k" / "b.png")
    weights = os.path.join(DATA, "tiny-pf-float.npz")
    run = tmp_path / "bd"
    step = json.loads(bytes(np.load(weights)["__meta__"]).decode()).get("step") or 0
    cmd = [sys.executable, "-m", "refcodec.train", "--data", DATA, "--run", str(run), "--kodak", str(tmp_path / "k"),
           "--init", weights, "--bd-ref", weights, "--rdoq-ste", "--batch", "1", "--crop", "64", "--threads", "1",
           "--lr", "1e-12", "--iters", str(step + 2), "--eval-every", "1", "--log-every", "1", "--eval-betas", "0.3,0.6,1"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    log = (run / "train.log").read_text()
    assert "BD-rate reference: " in log and (run / "bd_ref.json").exists()
    assert "[beta 0.30: " in log and "[beta 0.60: " in log and "[beta 0.00: " not in log
    bds = [float(ln.split("bd-rate ")[1].split()[0]) for ln in log.splitlines() if " bd-rate " in ln]
    assert len(bds) == 2 and all(abs(b) < 0.05 for b in bds), bds
    state = torch.load(run / "last.pt", map_location="cpu")
    assert state["best_metric"] == "bd-rate vs tiny-pf-float.npz (rdoq)" and abs(state["best"]) < 0.05


def test_measure_gives_the_trainers_bd_rate(tmp_path, capsys):
    """refcodec.train.measure: a file against itself is 0 %, the curve has one point per beta."""
    from PIL import Image
    from refcodec.train import measure
    (tmp_path / "k").mkdir()
    im = Image.open(os.path.join(DATA, "kodim23.png")).convert("RGB")
    im.crop((0, 0, 128, 128)).save(tmp_path / "k" / "a.png")
    weights = os.path.join(DATA, "tiny-pf-float.npz")
    measure.main([weights, "--ref", weights, "--rdoq-ste", "--eval-betas", "0.3,0.6,1", "--kodak", str(tmp_path / "k")])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all("bd-rate +0.000 %" in ln and ln.count("[beta ") == 3 for ln in lines)
    with pytest.raises(SystemExit):
        measure.main([weights, "--kodak", str(tmp_path / "nothing")])
