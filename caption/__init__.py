"""caption: recaption curated images with a VLM, into a caption group beside the images.

``refinery caption run`` (``caption.run``) captions the kept rows of a curated output with a
backend (``caption.backends``: cogvlm, hf, vllm, openai), ``caption mix`` (``caption.remix``)
re-draws the original/synthetic mix, ``caption report`` (``caption.report``) shows the result.
It reads and writes through ``curate`` (the one reader, schema and Ray adapter); ``curate``
never imports it.
"""
