"""DVC stage ``autoencoder``: data/prepared -> models_ae/ (the latent-diffusion autoencoder, cached; a status
marker only when latent diffusion is off).

    python pipelines/autoencoder.py                               # reads params.yaml (what DVC tracks)
    python pipelines/autoencoder.py data.image_size=128 autoencoder.max_steps=300
Same code as ``synthgen autoencoder`` (the registry in synthgen/runner.py).
"""

import sys

from synthgen.runner import run_named

if __name__ == "__main__":
    sys.exit(run_named("autoencoder"))
