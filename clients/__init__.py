"""Ready-to-run consumers of framebus streams: view, record, snapshot.

Each module runs as a script (``python clients/view.py cam1``) and is also
reachable from the command line (``framebus view cam1``).
"""
