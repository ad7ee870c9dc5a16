"""``mrigan serve``: a local web page where an analyst drops a video or image and reads its
artifact maps (the report of ``mrigan analyze``), with a JSON API the page itself uses.

Modules: ``config`` (ServeConfig and its checks), ``security`` (the gate every request passes:
token, host, origin, body size), ``paths`` (the one gate from a request path to a file),
``store`` (cases as folders under ``--cases``, their zip), ``intake`` (uploads and media-root
picks become cases; content decides the kind), ``worker`` (the analysis queue: the analyze
pipeline, followed by a progress monitor), ``views`` (what the API says about a case), ``app``
(routes), ``static/`` (the page).
Needs the optional extra ``pip install 'mrigan[serve]'`` (Starlette, uvicorn, python-multipart)
for ``app`` and the modules it uses; the package itself and ``config`` import without it (the
command line checks its settings, and says which extra is missing, before importing the app).
"""

from __future__ import annotations

from mrigan.app.serve.config import ServeConfig, ServeError, checked

__all__ = ["ServeConfig", "ServeError", "checked"]
