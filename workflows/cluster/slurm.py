"""Start a Dask cluster on SLURM with dask-jobqueue and map scenes on it with geoseg.

    pip install dask-jobqueue            # on the login node, in geoseg's environment
    python workflows/cluster/slurm.py scenes/*.tif --model /models/potsdam_unet_r34.pt -o /maps

The script submits SLURM jobs that each start Dask workers (one worker process
per job here, pinned to one GPU: the dask-cuda "one worker per GPU" layout), waits
for them, then runs ``geoseg run`` on every scene *in this process* with the
cluster's scheduler address. The same graph runs as on a laptop: the class rasters
are byte-identical to a local run with the same precision, and a worker that
dies mid-run (node failure, preemption) costs a retry of its tasks, not the run.

Instead of this script, an operator can keep a long-lived cluster and point
geoseg at it from anywhere that reaches the scheduler:

    dask scheduler --port 8786 &                                  # or a jobqueue/k8s deployment
    sbatch --array=0-7 --gres=gpu:1 --wrap "dask worker tcp://$(hostname):8786 --nthreads 1 --nworkers 1"
    geoseg run scene.tif --model m.pt --scheduler tcp://$(hostname):8786 --device cuda

On Kubernetes, `dask-kubernetes` (KubeCluster) or the Dask Helm chart give the same
``tcp://`` address. For ``geoseg run`` as here, workers need geoseg installed, the
model file at the same path, the scenes at the same paths or as URLs, and the output
folder shared (or ``-o s3://bucket/prefix``, which keeps the working stores in the
bucket); they load the model once per worker process and reuse it for every block.
A regional job (``geoseg batch job.yaml --scheduler tcp://…``) maps each scene as one
task and needs no shared folder: it sends the model to workers that cannot read it
(see "In the cloud" in the README and workflows/cloud/region-s3.yaml).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenes", nargs="+", type=Path)
    ap.add_argument("--model", required=True)
    ap.add_argument("-o", "--outdir", type=Path, required=True)
    ap.add_argument("--jobs", type=int, default=4, help="SLURM jobs = Dask workers (one GPU each)")
    ap.add_argument("--queue", default="gpu", help="SLURM partition")
    ap.add_argument("--account", default=None)
    ap.add_argument("--walltime", default="04:00:00")
    ap.add_argument("--cpu", action="store_true", help="CPU-only workers (no --gres, device cpu)")
    args = ap.parse_args()

    from dask_jobqueue import SLURMCluster
    from distributed import Client

    from geoseg.config import RunConfig
    from geoseg.pipeline import run

    gpu = not args.cpu
    cluster = SLURMCluster(
        queue=args.queue,
        account=args.account,
        cores=8,  # CPU cores per job: decode, blend and polygonise run beside the GPU
        processes=1,  # one worker process per job ...
        memory="32GB",
        walltime=args.walltime,
        job_extra_directives=["--gres=gpu:1"] if gpu else [],  # ... and one GPU per worker
        worker_extra_args=["--nthreads", "1"],  # one task at a time: the GPU is the unit of work
        log_directory="dask-logs",
    )
    cluster.scale(jobs=args.jobs)
    with Client(cluster) as client:
        client.wait_for_workers(1, timeout=1800)  # SLURM queues may take a while
        print(f"cluster up: {cluster.scheduler_address} ({len(client.scheduler_info()['workers'])} workers)")
        for scene in args.scenes:
            result = run(
                RunConfig(
                    scene=scene,
                    model=Path(args.model),
                    outdir=args.outdir,
                    scheduler=cluster.scheduler_address,
                    device="cuda" if gpu else "cpu",
                    overwrite=True,
                )
            )
            print(f"{scene.name}: {result.n_polygons} polygons, {result.timings['total']:.0f} s")
    cluster.close()


if __name__ == "__main__":
    main()
