"""GNN encoders of sample graphs, built from torch-geometric's own layers.

:class:`GNNEncoder` stacks ``depth`` message-passing layers of one kind (``'gin'`` = ``GINConv``,
``'gine'`` = ``GINEConv``, ``'sage'`` = ``SAGEConv``, ``'gcn'`` = ``GCNConv``, ``'gatv2'`` =
``GATv2Conv``), each followed by a normalisation (``'batch'`` = PyG ``BatchNorm``, ``'layer'`` = PyG
``LayerNorm(mode='node')``, ``'none'``) and a ReLU, and pools every layer's node embeddings per graph with a
PyG aggregation (``'mean'``, ``'max'``, ``'sum'``, ``'attention'`` = ``AttentionalAggregation`` with a
linear gate). Edge lengths enter as edge attributes where the layer takes them (``'gine'``, ``'gatv2'``).

Tensors in, tensors out: a batch of graphs is ``x`` (N, F), ``edge_index`` (2, E) with messages flowing
``edge_index[0] -> edge_index[1]``, ``batch`` (N,) graph index of each node and ``num_graphs``; optionally
``adj_t``, the same edges as a ``torch.sparse_csr_tensor`` with ``adj_t[i, j] = 1`` for an edge ``j -> i``,
which layers that support it (GIN, GraphSAGE, GCN without edge attributes) use for a sparse matrix product
instead of gather/scatter (faster on CPU, same result).

Defined outputs for degenerate graphs: a graph without nodes gets an all-zero embedding (every pooling);
a single node or a graph without edges goes through the layers like any other (each node sees only
itself).

Embeddings are always computed in ``eval()`` mode: batch normalisation uses its running statistics, so
a graph's embedding does not depend on the other graphs in its batch. An untrained model's running
statistics are mean 0 / variance 1 (batch norm is the identity until trained).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from .._errors import InputError

__all__ = ["GNNEncoder", "GraphBatch", "gnn_encoder", "CONVS", "NORMS", "POOLS"]

CONVS = ("gin", "gine", "sage", "gcn", "gatv2")
NORMS = ("batch", "layer", "none")
POOLS = ("mean", "max", "sum", "attention")
_SPARSE_OK = {"gin", "sage", "gcn"}  # layers that take a sparse adjacency (PyG message_and_aggregate)
_EDGE_ATTR = {"gine", "gatv2"}  # layers that take edge attributes


@dataclass
class GraphBatch:
    """Many graphs as one block-diagonal graph (tensors only).

    ``x`` (N, F) float32 node inputs; ``edge_index`` (2, E) int64, messages ``edge_index[0] ->
    edge_index[1]``, sorted by target; ``batch`` (N,) int64 graph of each node (non-decreasing);
    ``num_graphs`` (graphs without nodes included); ``edge_attr`` (E, 1) float32 or None; ``adj_t``
    optional ``torch.sparse_csr_tensor`` (N, N) of the same edges (row = target); ``y`` optional
    per-graph targets; ``graph_ids`` optional (num_graphs,) int64 ids of the graphs in the caller's order.
    """

    x: Tensor
    edge_index: Tensor
    batch: Tensor
    num_graphs: int
    edge_attr: Tensor | None = None
    adj_t: Tensor | None = None
    y: Tensor | None = None
    graph_ids: Tensor | None = None

    @property
    def num_nodes(self) -> int:
        return int(self.x.shape[0])

    def to(self, device) -> GraphBatch:
        def mv(t):
            return None if t is None else t.to(device)

        return GraphBatch(x=mv(self.x), edge_index=mv(self.edge_index), batch=mv(self.batch),
                          num_graphs=self.num_graphs, edge_attr=mv(self.edge_attr), adj_t=mv(self.adj_t),
                          y=mv(self.y), graph_ids=self.graph_ids)


def _check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value.lower() not in choices:
        raise InputError(f"{name} must be one of {list(choices)}, got {value!r}.")
    return value.lower()


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be an integer >= 1, got {value!r}.")
    return int(value)


class GNNEncoder(nn.Module):
    """A stack of torch-geometric message-passing layers with per-layer graph pooling.

    Parameters
    ----------
    in_channels
        Node input size.
    conv
        ``'gin'``, ``'gine'``, ``'sage'``, ``'gcn'`` or ``'gatv2'``.
    hidden
        Width of every layer (the embedding size per layer).
    depth
        Number of message-passing layers.
    norm
        ``'batch'``, ``'layer'`` or ``'none'``.
    pool
        ``'mean'``, ``'max'``, ``'sum'`` or ``'attention'``.
    edge_dim
        Size of the edge attributes for ``'gine'``/``'gatv2'`` (1 = the edge length); ignored by the
        other layers. ``None`` = no edge attributes.
    heads
        Attention heads of ``'gatv2'`` (their outputs are averaged, so the width stays ``hidden``).
    dropout
        Dropout after each layer (training only).
    seed
        Initialise the weights from this seed (the global torch RNG is left untouched); ``None`` = from
        the global RNG.
    """

    builder = "gnn"

    def __init__(self, in_channels: int, *, conv: str = "gin", hidden: int = 64, depth: int = 3,
                 norm: str = "batch", pool: str = "mean", edge_dim: int | None = 1, heads: int = 1,
                 dropout: float = 0.0, seed: int | None = None):
        super().__init__()
        from torch_geometric import nn as gnn

        self.in_channels = _positive_int(in_channels, "in_channels")
        self.conv_name = _check_choice(conv, "conv", CONVS)
        self.hidden = _positive_int(hidden, "hidden")
        self.depth = _positive_int(depth, "depth")
        self.norm_name = _check_choice(norm, "norm", NORMS)
        self.pool_name = _check_choice(pool, "pool", POOLS)
        self.heads = _positive_int(heads, "heads")
        self.dropout = float(dropout)
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"dropout must be in [0, 1), got {dropout!r}.")
        self.edge_dim = None if edge_dim is None or self.conv_name not in _EDGE_ATTR else \
            _positive_int(edge_dim, "edge_dim")
        if self.conv_name == "gine" and self.edge_dim is None:
            raise InputError("conv='gine' needs edge attributes: pass edge_dim=1 (edge lengths).")

        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.pools = nn.ModuleList()
        for i in range(self.depth):
            c_in = self.in_channels if i == 0 else self.hidden
            self.convs.append(self._make_conv(gnn, c_in))
            if self.norm_name == "batch":
                self.norms.append(gnn.BatchNorm(self.hidden))
            elif self.norm_name == "layer":
                self.norms.append(gnn.LayerNorm(self.hidden, mode="node"))
            else:
                self.norms.append(nn.Identity())
            self.pools.append(self._make_pool(gnn))
        self.seed = seed
        if seed is not None:
            self.reset_parameters(seed=seed)
        self.eval()

    # ------------------------------------------------------------------------------------ building
    def _make_conv(self, gnn, c_in: int) -> nn.Module:
        h = self.hidden
        name = self.conv_name
        if name in ("gin", "gine"):
            # in-place ReLU: the first linear's output is a fresh tensor (and not needed for its gradient)
            mlp = nn.Sequential(nn.Linear(c_in, h), nn.ReLU(inplace=True), nn.Linear(h, h))
            if name == "gin":
                return gnn.GINConv(mlp, train_eps=False)
            return gnn.GINEConv(mlp, train_eps=False, edge_dim=self.edge_dim)
        if name == "sage":
            return gnn.SAGEConv(c_in, h, aggr="mean")
        if name == "gcn":
            return gnn.GCNConv(c_in, h, cached=False)
        return gnn.GATv2Conv(c_in, h, heads=self.heads, concat=False, edge_dim=self.edge_dim,
                             add_self_loops=True, fill_value="mean")

    def _make_pool(self, gnn) -> nn.Module:
        if self.pool_name == "mean":
            return gnn.aggr.MeanAggregation()
        if self.pool_name == "max":
            return gnn.aggr.MaxAggregation()
        if self.pool_name == "sum":
            return gnn.aggr.SumAggregation()
        return gnn.aggr.AttentionalAggregation(gate_nn=nn.Linear(self.hidden, 1))

    def config(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this architecture (``GNNEncoder(**config)``)."""
        return {"in_channels": self.in_channels, "conv": self.conv_name, "hidden": self.hidden,
                "depth": self.depth, "norm": self.norm_name, "pool": self.pool_name, "edge_dim": self.edge_dim,
                "heads": self.heads, "dropout": self.dropout}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> GNNEncoder:
        """Rebuild from :meth:`config` (random weights; load a state dict afterwards)."""
        return cls(**{k: v for k, v in dict(config).items() if k != "seed"})

    @property
    def architecture(self) -> str:
        """Short name, e.g. ``'gin-3x64'`` (``'gin-3x64-max'`` etc. when not the defaults)."""
        s = f"{self.conv_name}-{self.depth}x{self.hidden}"
        if self.norm_name != "batch":
            s += f"-{self.norm_name}norm"
        if self.pool_name != "mean":
            s += f"-{self.pool_name}"
        return s

    @property
    def uses_edge_attr(self) -> bool:
        return self.edge_dim is not None

    def out_channels(self, layer: int | str = -1) -> int:
        """Embedding size for ``layer`` (see :meth:`forward`)."""
        return self.hidden * self.depth if self._layers(layer) is None else self.hidden

    def reset_parameters(self, seed: int | None = None) -> None:
        """Re-initialise every weight (and batch-norm statistics); from ``seed`` when given, without
        touching the global torch RNG."""
        def _reset():
            # PyG layers reset their own parameters and their inner MLPs; fixed order = reproducible
            for i in range(self.depth):
                self.convs[i].reset_parameters()
                if hasattr(self.norms[i], "reset_parameters"):
                    self.norms[i].reset_parameters()
                self.pools[i].reset_parameters()

        if seed is None:
            _reset()
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seed))
                _reset()
        self.seed = seed

    # ------------------------------------------------------------------------------------- forward
    def _layers(self, layer: int | str | Sequence[int]) -> list[int] | None:
        """Indices of the layers to return; ``None`` = all, concatenated."""
        if isinstance(layer, str):
            if layer.lower() in ("all", "concat"):
                return None
            if layer.lower() == "last":
                return [self.depth - 1]
            raise InputError(f"layer must be an int (0-based, negative from the end), 'last' or 'concat', "
                             f"got {layer!r}.")
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise InputError(f"layer must be an int, 'last' or 'concat', got {layer!r}.")
        if not -self.depth <= layer < self.depth:
            raise InputError(f"layer={layer} is out of range for a {self.depth}-layer model "
                             f"(use 0..{self.depth - 1}, -1 for the last, or 'concat').")
        return [layer % self.depth]

    def _check_inputs(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None,
                      adj_t: Tensor | None) -> tuple[Tensor | None, Tensor]:
        """Check ``x`` and ``edge_attr`` against the model; return ``edge_attr`` as 2-D and the graph to pass
        the layers (``adj_t`` where the layer takes a sparse adjacency, else ``edge_index``)."""
        if x.dim() != 2 or x.shape[1] != self.in_channels:
            raise InputError(f"x must have shape (n_nodes, {self.in_channels}), got {tuple(x.shape)}.")
        if self.edge_dim is not None:
            if edge_attr is None:
                raise InputError(f"conv={self.conv_name!r} with edge_dim={self.edge_dim} needs edge_attr "
                                 f"(n_edges, {self.edge_dim}).")
            if edge_attr.dim() == 1:
                edge_attr = edge_attr[:, None]
        graph = adj_t if adj_t is not None and self.conv_name in _SPARSE_OK else edge_index
        return edge_attr, graph

    def node_embeddings(self, x: Tensor, edge_index: Tensor, *, edge_attr: Tensor | None = None,
                        adj_t: Tensor | None = None, upto: int | None = None) -> list[Tensor]:
        """Node embeddings after each layer (a list of ``depth`` (N, hidden) tensors, or ``upto + 1``)."""
        edge_attr, graph = self._check_inputs(x, edge_index, edge_attr, adj_t)
        out = []
        h = x
        last = self.depth - 1 if upto is None else upto
        for i in range(last + 1):
            h = self._step(i, h, graph, edge_attr)
            out.append(h)
        return out

    def _step(self, i: int, h: Tensor, graph, edge_attr: Tensor | None) -> Tensor:
        """Layer ``i``: convolution, normalisation, ReLU (in place when no gradient is recorded: the
        normalised tensor is a fresh one), dropout while training."""
        h = self.convs[i](h, graph, edge_attr) if self.edge_dim is not None else self.convs[i](h, graph)
        h = self.norms[i](h)
        h = torch.relu(h) if torch.is_grad_enabled() else h.relu_()
        if self.dropout and self.training:
            h = nn.functional.dropout(h, p=self.dropout, training=True)
        return h

    def pool(self, hs: list[Tensor], batch: Tensor, num_graphs: int, layer: int | str = -1) -> Tensor:
        """Pool per-layer node embeddings to (num_graphs, d) for ``layer``."""
        which = self._layers(layer)
        idx = range(len(hs)) if which is None else which
        pooled = []
        for i in idx:
            g = self.pools[i](hs[i], index=batch, dim_size=num_graphs)
            pooled.append(g)
        out = pooled[0] if len(pooled) == 1 else torch.cat(pooled, dim=1)
        # a graph without nodes: zeros, whatever the pooling (documented)
        empty = torch.bincount(batch, minlength=num_graphs) == 0
        if bool(empty.any()):
            out = out.masked_fill(empty[:, None], 0.0)
        return out

    def forward(self, x: Tensor, edge_index: Tensor, batch: Tensor | None = None, *,
                num_graphs: int | None = None, edge_attr: Tensor | None = None, adj_t: Tensor | None = None,
                layer: int | str = -1) -> Tensor:
        """Graph embeddings (num_graphs, d) of a batch of graphs.

        ``layer``: ``-1``/``'last'`` = the last layer's pooled nodes; an int = that layer (0-based,
        negative from the end); ``'concat'``/``'all'`` = every layer's pooled nodes side by side
        (``depth * hidden`` columns, layer 0 first).
        """
        which = self._layers(layer)
        if batch is None:
            batch = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        if num_graphs is None:
            num_graphs = int(batch.max()) + 1 if batch.numel() else 1
        upto = self.depth - 1 if which is None else max(which)
        if x.shape[0] == 0:
            width = self.out_channels(layer)
            return x.new_zeros((num_graphs, width))
        edge_attr, graph = self._check_inputs(x, edge_index, edge_attr, adj_t)
        # layer by layer, pooling a layer's nodes as soon as it is computed (only the pooled layers are
        # kept, so a batch holds at most two layers' node embeddings)
        keep = set(range(self.depth)) if which is None else set(which)
        pooled = {}
        h = x
        for i in range(upto + 1):
            h = self._step(i, h, graph, edge_attr)
            if i in keep:
                pooled[i] = self.pools[i](h, index=batch, dim_size=num_graphs)
        del h
        out = pooled[upto] if which is not None else torch.cat([pooled[i] for i in range(self.depth)], dim=1)
        # a graph without nodes: zeros, whatever the pooling (documented)
        empty = torch.bincount(batch, minlength=num_graphs) == 0
        if bool(empty.any()):
            out = out.masked_fill(empty[:, None], 0.0)
        return out

    def embed(self, gb: GraphBatch, *, layer: int | str = -1) -> Tensor:
        """:meth:`forward` on a :class:`GraphBatch`."""
        return self(gb.x, gb.edge_index, gb.batch, num_graphs=gb.num_graphs,
                    edge_attr=gb.edge_attr if self.uses_edge_attr else None, adj_t=gb.adj_t, layer=layer)


def gnn_encoder(in_channels: int, *, conv: str = "gin", hidden: int = 64, depth: int = 3, norm: str = "batch",
                pool: str = "mean", edge_dim: int | None = 1, heads: int = 1, dropout: float = 0.0,
                seed: int | None = 0) -> GNNEncoder:
    """A :class:`GNNEncoder` with weights initialised from ``seed`` (an untrained twin when not trained).

    See :class:`GNNEncoder` for the options; ``seed=None`` draws from the global torch RNG.
    """
    return GNNEncoder(in_channels, conv=conv, hidden=hidden, depth=depth, norm=norm, pool=pool,
                      edge_dim=edge_dim, heads=heads, dropout=dropout, seed=seed)
