"""How the HEST ridge's PCA width changes regression scores when a set has fewer spots than 256.

The HEST-Benchmark protocol (``tg.eval`` task ``'regression'``) is PCA to 256 components fitted on the
training rows, then a ridge with alpha = 100 / (components x targets).  With fewer training rows than 256
(HER2ST B4: 283 spots, about 226 per training fold) PCA keeps every direction of the training rows and the
ridge barely regularises, so wide representations interpolate the training rows.  This script scores every
representation of a bench cache with 256 (the protocol), 64 and 16 components on the same 5 folds
(information only: the protocol itself stays HEST's)::

    python -c "import tissuegraph as tg; tg.bench.run_bench('her2st', 'OUT', quick=True)"
    python benchmarks/hest_ridge_width.py OUT/cache/samples.h5ad --target expression
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def main(argv=None) -> int:
    import anndata as ad
    from sklearn.model_selection import KFold

    from tissuegraph.eval._protocols import regression_split

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("samples", help="a samples .h5ad with the regression target in obsm")
    p.add_argument("--target", default="expression", help="obsm key of the targets (default expression)")
    p.add_argument("--components", type=int, nargs="+", default=[256, 64, 16])
    p.add_argument("--folds", type=int, default=5)
    args = p.parse_args(argv)
    s = ad.read_h5ad(args.samples)
    Y = np.asarray(s.obsm[args.target], float)
    names = [str(i) for i in range(Y.shape[1])]
    folds = list(KFold(args.folds, shuffle=True, random_state=0).split(Y))
    out = {}
    for rep in sorted(k for k in s.obsm if k.startswith("X_")):
        X = np.asarray(s.obsm[rep], float)
        X = X[:, ~np.isnan(X).all(axis=0)]
        nan = bool(np.isnan(X).any())
        out[rep] = {"columns": int(X.shape[1])}
        for nc in args.components:
            r = [regression_split(X, Y, tr, te, target_names=names, has_nan=nan, seed=0, n_components=nc)[0][2]
                 for tr, te in folds]
            out[rep][f"pearson_r_pca{nc}"] = round(float(np.mean(r)), 3)
        print(rep, json.dumps(out[rep]), flush=True)
    print(json.dumps(dict(samples=args.samples, n=int(s.n_obs), folds=args.folds,
                          n_train=[len(tr) for tr, _ in folds], scores=out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
