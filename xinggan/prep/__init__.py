"""Dataset tools, offline: ``prepare`` (raw downloads), ``custom`` (one's own photos), ``framing``
(fitting a person into a frame), ``check`` (every problem of a dataset) and ``toy`` (the drawn
toy set). Training never imports them; import the modules themselves (this file loads none).
"""
