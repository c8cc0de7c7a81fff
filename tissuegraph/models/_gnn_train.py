"""Offline training of a :class:`GNNEncoder` on batches of sample graphs (tensors only).

Objectives
----------
``'dgi'``
    Deep graph infomax (torch-geometric's ``DeepGraphInfomax``: its bilinear discriminator and loss).
    Positive pairs are a node's last-layer embedding and the sigmoid of its *own graph's* mean
    embedding; negatives are nodes of the corrupted batch (node inputs permuted across the batch) against
    the same summaries.
``'graphcl'``
    GraphCL-style contrastive learning: two views of every graph, each with edges dropped
    (``drop_rate``) and node inputs masked (``mask_rate``, entries set to 0), the pooled embeddings
    through a 2-layer projection head, NT-Xent loss (``temperature``) between the views of the graphs
    of a batch.
``'masked'``
    Masked-feature reconstruction: the inputs of ``mask_rate`` of the nodes are set to 0, a linear decoder
    reconstructs them from the last layer; mean squared error on the masked nodes.
``'supervised'``
    A linear head on the pooled embedding; cross-entropy for class labels (``y`` int64, ``-1`` =
    unlabelled) or mean squared error for numeric targets (``y`` float, NaN = unlabelled).

Determinism: the global torch RNG is seeded inside ``torch.random.fork_rng`` (restored afterwards),
augmentations draw from it, and the caller supplies the batches for each epoch (shuffled with its own
seeded generator), so the same seed gives the same weights on the same machine.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Iterable

import torch
from torch import Tensor, nn

from .._errors import InputError
from .._logging import logger, progress_bar
from .gnn import GNNEncoder, GraphBatch

__all__ = ["train_gnn_encoder", "OBJECTIVES"]

OBJECTIVES = ("dgi", "graphcl", "masked", "supervised")


def _drop_edges(gb: GraphBatch, rate: float) -> tuple[Tensor, Tensor | None]:
    if rate <= 0 or gb.edge_index.shape[1] == 0:
        return gb.edge_index, gb.edge_attr
    keep = torch.rand(gb.edge_index.shape[1], device=gb.edge_index.device) >= rate
    return gb.edge_index[:, keep], None if gb.edge_attr is None else gb.edge_attr[keep]


def _mask_entries(x: Tensor, rate: float) -> Tensor:
    if rate <= 0:
        return x
    return x * (torch.rand_like(x) >= rate).to(x.dtype)


def _nt_xent(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """Normalised temperature-scaled cross entropy (SimCLR / GraphCL) between two views."""
    n = z1.shape[0]
    z = nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.t() / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return nn.functional.cross_entropy(sim, target)


class _DGI(nn.Module):
    """torch-geometric's DeepGraphInfomax with one summary per graph (each node meets its own graph's)."""

    def __init__(self, hidden: int):
        super().__init__()
        from torch_geometric.nn import DeepGraphInfomax

        self.dgi = DeepGraphInfomax(hidden, encoder=nn.Identity(), summary=lambda z, *a, **k: z,
                                    corruption=lambda *a, **k: a)

    def loss(self, pos: Tensor, neg: Tensor, summary_per_node: Tensor) -> Tensor:
        eps = 1e-15
        w = self.dgi.weight
        # DeepGraphInfomax.discriminate computes z @ (W @ s) for one summary s; here s differs per node
        pos_v = torch.sigmoid((pos * (summary_per_node @ w.t())).sum(-1))
        neg_v = torch.sigmoid((neg * (summary_per_node @ w.t())).sum(-1))
        return -torch.log(pos_v + eps).mean() - torch.log(1 - neg_v + eps).mean()


def train_gnn_encoder(encoder: GNNEncoder, batches: Callable[[int], Iterable[GraphBatch]], *,
                      objective: str = "dgi", epochs: int = 20, lr: float = 1e-3, weight_decay: float = 0.0,
                      seed: int = 0, device: str | torch.device = "cpu", n_classes: int | None = None,
                      mask_rate: float = 0.2, drop_rate: float = 0.2, temperature: float = 0.5,
                      progress: bool | None = None) -> dict:
    """Train ``encoder`` in place; return ``{'loss_log': [...], 'metrics': {...}}``.

    Parameters
    ----------
    encoder
        The model (its current weights are the starting point).
    batches
        ``batches(epoch)`` yields the epoch's :class:`GraphBatch` es (``y`` set for ``'supervised'``).
    objective
        ``'dgi'``, ``'graphcl'``, ``'masked'`` or ``'supervised'`` (see the module docs).
    n_classes
        ``'supervised'`` with class labels: number of classes; ``None`` = regression on float ``y``.
    """
    if objective not in OBJECTIVES:
        raise InputError(f"objective must be one of {list(OBJECTIVES)}, got {objective!r}.")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise InputError(f"epochs must be an integer >= 1, got {epochs!r}.")
    from torch_geometric.nn import global_mean_pool

    device = torch.device(device)
    h = encoder.hidden
    loss_log: list[dict] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        encoder.to(device)
        extra = nn.Module()
        if objective == "dgi":
            extra.dgi = _DGI(h)
        elif objective == "graphcl":
            extra.head = nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Linear(h, h))
        elif objective == "masked":
            extra.decoder = nn.Linear(h, encoder.in_channels)
        else:
            extra.head = nn.Linear(h, n_classes if n_classes else 1)
        extra.to(device)
        params = list(encoder.parameters()) + list(extra.parameters())
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
        bar = progress_bar(total=epochs, desc=f"train GNN ({objective})", enabled=progress, unit="epoch")
        t_start = time.perf_counter()
        for epoch in range(epochs):
            encoder.train()
            extra.train()
            t0 = time.perf_counter()
            total, n_items, n_batches = 0.0, 0, 0
            correct = 0
            for gb in batches(epoch):
                gb = gb.to(device)
                if gb.num_nodes == 0:
                    continue
                ea = gb.edge_attr if encoder.uses_edge_attr else None
                if objective == "dgi":
                    pos = encoder.node_embeddings(gb.x, gb.edge_index, edge_attr=ea)[-1]
                    perm = torch.randperm(gb.num_nodes, device=device)
                    neg = encoder.node_embeddings(gb.x[perm], gb.edge_index, edge_attr=ea)[-1]
                    summary = torch.sigmoid(global_mean_pool(pos, gb.batch, size=gb.num_graphs))
                    loss = extra.dgi.loss(pos, neg, summary[gb.batch])
                    weight = gb.num_nodes
                elif objective == "graphcl":
                    nonempty = torch.bincount(gb.batch, minlength=gb.num_graphs) > 0
                    if int(nonempty.sum()) < 2:
                        continue
                    views = []
                    for _ in range(2):
                        ei, eattr = _drop_edges(gb, drop_rate)
                        x = _mask_entries(gb.x, mask_rate)
                        g = encoder(x, ei, gb.batch, num_graphs=gb.num_graphs,
                                    edge_attr=eattr if encoder.uses_edge_attr else None)
                        views.append(extra.head(g[nonempty]))
                    loss = _nt_xent(views[0], views[1], temperature)
                    weight = int(nonempty.sum())
                elif objective == "masked":
                    masked = torch.rand(gb.num_nodes, device=device) < mask_rate
                    if not bool(masked.any()):
                        continue
                    x = gb.x.masked_fill(masked[:, None], 0.0)
                    z = encoder.node_embeddings(x, gb.edge_index, edge_attr=ea)[-1]
                    loss = nn.functional.mse_loss(extra.decoder(z[masked]), gb.x[masked])
                    weight = int(masked.sum())
                else:
                    if gb.y is None:
                        raise InputError("objective='supervised' needs targets (GraphBatch.y).")
                    g = encoder(gb.x, gb.edge_index, gb.batch, num_graphs=gb.num_graphs, edge_attr=ea)
                    out = extra.head(g)
                    if n_classes:
                        ok = gb.y >= 0
                        if not bool(ok.any()):
                            continue
                        loss = nn.functional.cross_entropy(out[ok], gb.y[ok])
                        correct += int((out[ok].argmax(1) == gb.y[ok]).sum())
                    else:
                        ok = torch.isfinite(gb.y)
                        if not bool(ok.any()):
                            continue
                        loss = nn.functional.mse_loss(out[ok, 0], gb.y[ok].to(out.dtype))
                    weight = int(ok.sum())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * weight
                n_items += weight
                n_batches += 1
            if n_batches == 0:
                raise InputError(f"objective={objective!r}: no batch could be used for training (too few nodes "
                                 "or graphs; graphcl needs at least 2 non-empty graphs per batch, supervised "
                                 "needs labelled samples).")
            entry = {"epoch": epoch + 1, "loss": total / max(n_items, 1), "seconds": time.perf_counter() - t0,
                     "batches": n_batches}
            if objective == "supervised" and n_classes:
                entry["train_accuracy"] = correct / max(n_items, 1)
            if not math.isfinite(entry["loss"]):
                raise InputError(f"training diverged at epoch {epoch + 1} (loss {entry['loss']}); lower lr.")
            loss_log.append(entry)
            logger.debug("train GNN %s epoch %d: loss %.4f (%.2fs)", objective, epoch + 1, entry["loss"],
                         entry["seconds"])
            bar.update(1)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{entry['loss']:.4f}")
        bar.close()
    encoder.eval()
    metrics = {"final_loss": loss_log[-1]["loss"], "first_loss": loss_log[0]["loss"], "epochs": epochs,
               "seconds": time.perf_counter() - t_start,
               "seconds_per_epoch": sum(e["seconds"] for e in loss_log) / len(loss_log)}
    if "train_accuracy" in loss_log[-1]:
        metrics["train_accuracy"] = loss_log[-1]["train_accuracy"]
    logger.info("trained GNN (%s): loss %.4f -> %.4f in %d epochs (%.1fs)", objective, metrics["first_loss"],
                metrics["final_loss"], epochs, metrics["seconds"])
    return {"loss_log": loss_log, "metrics": metrics}
