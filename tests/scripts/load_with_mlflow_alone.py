"""Run with `python -I` in an empty folder: load registered models with MLflow's own API while
importing this project is refused, and print what they reconstruct (JSON on stdout).

argv: tracking URI, a .npy of digits (N, 784), then the model URIs to load."""

import json
import sys


class RefuseTheProject:
    """A meta-path finder that refuses this project's packages: what loads here needs none."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {"study", "models", "analysis"}:
            raise ImportError(f"{name} is refused in this process")
        return None


sys.meta_path.insert(0, RefuseTheProject())
try:
    import study  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("the project was importable")

import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

mlflow.set_tracking_uri(sys.argv[1])
digits = np.load(sys.argv[2])
found = {}
for uri in sys.argv[3:]:
    recon = mlflow.pyfunc.load_model(uri).predict(digits)
    module = mlflow.pytorch.load_model(uri)
    again = module(torch.from_numpy(digits)).detach().numpy()
    found[uri] = {
        "min": float(recon.min()),
        "max": float(recon.max()),
        "mse": float(((recon - digits) ** 2).mean()),
        "pytorch_mse": float(((again - digits) ** 2).mean()),
    }
print(json.dumps(found))
