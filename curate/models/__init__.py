"""Model stages (OCR, faces, NSFW, CLIP, heads, watermark): measured columns, one fused actor pool.

``curate.models.base`` is the contract, ``registry`` the list, ``stage`` the fused actor,
``cascade`` which rows are measured, ``model_pass`` the pass ``curate run`` makes.
"""
