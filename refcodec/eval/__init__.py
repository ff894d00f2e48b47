"""The evaluation tool users run (``refcodec eval``): metrics, Bjontegaard delta rate, the RD runs
against classical codecs.  The one-off studies behind the figures are refcodec.studies."""
