"""sd35ui: a web app, CLI and API for text-to-image generation with Stable Diffusion 3.5 Medium."""

__version__ = "0.1.0"
