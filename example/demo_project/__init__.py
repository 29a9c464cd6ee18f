"""The tiny Django project behind mailroom's demo (``make demo``)."""
