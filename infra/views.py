"""The deployer's own SQL on FHIR ViewDefinitions (context ``viewsDir``), checked at synth.

The lake functions load these at run time (``fhirlake.lake.viewdefs.load_views``) and only *log* a view
they cannot materialize, so that one bad file never stops the lake. At deploy time the deployer is there
to fix it: every file is checked here the same way, and any problem fails the synth, naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path

# Where the folder lands inside the code asset of the functions that materialize views; Lambda unpacks
# the asset into its task root, so FHIRLAKE_VIEWS_DIR is /var/task/<this>.
VIEWS_ASSET_DIR = "fhirlake_views"


class ViewsFolderError(ValueError):
    """A file of the views folder cannot be deployed."""


def check_views_folder(folder: Path) -> tuple[str, ...]:
    """The names of the views of ``folder``'s ``*.json`` files, each compiled as the lake will compile it.

    Fails on a file that is not JSON or not a valid ViewDefinition, on two files defining the same view,
    and on a view the lake would leave out (one whose name takes a resource type's table or view). A file
    may replace a shipped view by using its name.
    """
    from fhirlake.lake.viewdefs import reserved_view_names
    from fhirlake.views import ViewDefinitionError, compile_view

    if not folder.is_dir():
        raise ViewsFolderError(f"no such folder ({folder})")
    files = sorted(folder.glob("*.json"))
    if not files:
        raise ViewsFolderError(f"no *.json ViewDefinition in {folder}")
    defined_in: dict[str, str] = {}
    for path in files:
        try:
            name = compile_view(json.loads(path.read_bytes())).name
        except (ValueError, ViewDefinitionError) as exc:  # JSONDecodeError is a ValueError
            raise ViewsFolderError(f"{path.name}: {exc}") from None
        if not name:  # the lake names the view's table and Glue view after it
            raise ViewsFolderError(f"{path.name}: the ViewDefinition has no name")
        if name in defined_in:
            raise ViewsFolderError(f"{path.name}: view {name!r} is already defined by {defined_in[name]}")
        if name in reserved_view_names():
            raise ViewsFolderError(
                f"{path.name}: view {name!r} would take the name of a resource type's table or view "
                "(<type> or <type>_history); rename it"
            )
        defined_in[name] = path.name
    return tuple(defined_in)
