"""One construct per concern. Resource shapes come from :mod:`fhirlake.topology`."""
