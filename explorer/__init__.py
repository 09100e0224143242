"""explorer: the Gradio web app over ``core`` (see issue 4; not built yet)."""
