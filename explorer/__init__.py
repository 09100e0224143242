"""explorer: the Gradio web app over ``core`` (``build_app`` in :mod:`explorer.app`, started by launch.py)."""
