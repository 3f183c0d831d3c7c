"""The same fit on one process or on several, launched by torchrun.

    python examples/distributed_fit.py                                  # one process
    torchrun --nproc-per-node=2 examples/distributed_fit.py             # two (GPUs or CPU)
    torchrun --nproc-per-node=2 examples/distributed_fit.py --quick     # small and fast

Nothing in the script knows how it was launched: ``fit`` reads torchrun's
environment, joins the process group, trains on this process's GPU (or with
gloo on the CPU) and returns the same fitted estimator on every process. Files
are written once: ``save_model`` writes on rank 0 only. The embeddings are
read from a ``.npy`` file as a memmap, so each process reads the rows it
needs and never the whole file.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from sklearn.datasets import make_blobs

from skcdc import CDCClustering
from skcdc.distributed import current_world
from skcdc.metrics import clustering_report
from skcdc.persistence import save_model

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--quick", action="store_true", help="3000 rows, 10 epochs")
parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "skcdc-example")
args = parser.parse_args()

# Data that every process can open: a .npy file on a shared path (written
# the same way by each process here, so no process waits for another).
n_rows = 3000 if args.quick else 60000
X, y = make_blobs(n_rows, n_features=64, centers=20, cluster_std=4.0, random_state=0)
args.out.mkdir(parents=True, exist_ok=True)
path = args.out / f"embeddings-{n_rows}.npy"
if not path.exists():
    tmp = path.with_suffix(f".{np.random.randint(1 << 30)}.tmp.npy")
    np.save(tmp, X.astype(np.float32))
    tmp.replace(path)

model = CDCClustering(
    n_clusters=20, epochs=10 if args.quick else "auto", random_state=0
).fit(str(path))

world = current_world()
# One write per line: the processes share the terminal.
sys.stdout.write(f"rank {world.rank} of {world.size}: {clustering_report(y, model.labels_)}\n")
sys.stdout.flush()
save_model(model, args.out / "model.skcdc")
if world.is_main:
    print(f"saved the model to {args.out / 'model.skcdc'}")
