"""Dataset tools: offline programs that make a dataset or check one; training never imports them.

``prepare`` (the raw Market-1501 and DeepFashion downloads -> the prepared layout), ``custom``
(one's own photos, one folder per person -> the prepared layout), ``framing`` (fitting a person
of any photo into a model's frame, also used to re-pose one's own photos), ``check`` (every
problem of a prepared dataset, reported at once) and ``toy`` (the procedurally drawn toy set).

They build on :mod:`xinggan.data` (file formats, layouts) and :mod:`xinggan.joints`; the data
layer that training reads never imports this package. Import the modules themselves
(``from xinggan.prep.toy import make_toy_dataset``): this file loads none of them.
"""
