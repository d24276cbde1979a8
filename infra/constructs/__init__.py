"""One construct per concern. Resource shapes come from :mod:`fhirlake.topology`."""


def pascal(role: str) -> str:
    """Construct-id form of a topology role: ``"lake-maintenance"`` -> ``"LakeMaintenance"``.

    Single-word roles give what ``str.capitalize`` gave before, so existing logical ids are unchanged.
    """
    return "".join(part.capitalize() for part in role.replace("_", "-").split("-"))
