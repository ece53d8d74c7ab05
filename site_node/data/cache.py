"""A site's loaded data kept per process while the task and the files are unchanged.

The site checks its data again before every round (:func:`load_cached`); reading, validating and
(for a task with features) transforming them again each time would be wasted work.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

from policies.task_loader import LoadedTask
from site_node.data.dataset import SiteData, load_site_data

CACHE_SIZE = 8


def _stamp(path: Path) -> tuple[int, int, int]:
    """Changes whenever the file, or any file under the folder, changes."""
    if path.is_dir():
        latest, count, size = 0, 0, 0
        for root, _, files in os.walk(path):
            for name in files:
                st = os.stat(os.path.join(root, name))
                latest, count, size = max(latest, st.st_mtime_ns), count + 1, size + st.st_size
        return latest, count, size
    st = path.stat()
    return st.st_mtime_ns, 1, st.st_size


_CACHE: OrderedDict[tuple[str, str, tuple[int, int, int], str], SiteData] = OrderedDict()


def load_cached(loaded: LoadedTask, path: Path | str, *, features_dir: Path | None = None
                ) -> SiteData:
    """:func:`load_site_data`, kept per process by (task hash, path, file stamp, features
    folder)."""
    resolved = Path(path).expanduser().resolve()
    try:
        key = (loaded.sha256, str(resolved), _stamp(resolved), str(features_dir))
    except OSError:
        return load_site_data(loaded, resolved, features_dir=features_dir)  # refused
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    data = load_site_data(loaded, resolved, features_dir=features_dir)
    _CACHE[key] = data
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return data
