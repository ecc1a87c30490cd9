"""Weight converters from the anchors' published checkpoints to kerasep models.

Each converter exposes ``convert_config(source)`` (when the source carries an architecture)
and ``convert_weights(model, source)``; framework imports (torch) are lazy.
"""
