"""Making a loaded network fast for inference: batch norms folded, convolution + ReLU fused, low-precision weights.

:func:`optimize_for_inference` is what the prediction pipeline applies to a network it has loaded; the steps are
:func:`fold_batch_norms` (torch.fx), :func:`fuse_conv_relu` (oneDNN's fused kernel on CPU, a private torch op,
used as torch.compile uses it) and, on CPUs with native bfloat16, bfloat16 backbone weights. The network keeps
its interface (``encode(stream, x)``, ``head(features)``) and computes the same function up to rounding.
"""

from __future__ import annotations

import copy
import logging

import torch

from emoctx.models.network import EmotionNet

log = logging.getLogger(__name__)


def fold_batch_norms(module: torch.nn.Module, inplace: bool = False) -> torch.nn.Module:
    """Fold every BatchNorm that follows a convolution into it (eval mode): one operation instead of two.

    Uses torch.fx; an architecture that cannot be traced is returned unchanged. ``inplace`` skips the copy of
    ``module`` (whose layers the returned module may then share).
    """
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(module.eval(), inplace=inplace)
    except Exception as e:  # noqa: BLE001 - tracing fails for some architectures; they simply run unfused
        log.debug("batch norms not folded (%s: %s)", type(e).__name__, e)
        return module


class _ConvReLU(torch.nn.Module):
    """A convolution with the ReLU that follows it, optionally after adding a residual, as one oneDNN call.

    ``torch.ops.mkldnn._convolution_pointwise`` (the kernel torch.compile emits for this pattern on CPU) applies
    the ReLU (and the residual sum) while the convolution's output is still in cache: no extra passes over
    the activations, and fewer parallel regions per forward.
    """

    def __init__(self, conv: torch.nn.Conv2d):
        super().__init__()
        self.weight = conv.weight
        self.bias = conv.bias
        self.padding = list(conv.padding)  # type: ignore[arg-type]
        self.stride = list(conv.stride)
        self.dilation = list(conv.dilation)
        self.groups = conv.groups

    def forward(self, x: torch.Tensor, other: torch.Tensor | None = None) -> torch.Tensor:
        args = (self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups)
        if other is None:
            return torch.ops.mkldnn._convolution_pointwise(x, *args, "relu", [], "")
        return torch.ops.mkldnn._convolution_pointwise.binary(x, other, *args, "add", 1.0, "relu", [], "")


def _is_relu(node: torch.fx.Node, modules: dict[str, torch.nn.Module]) -> bool:
    if node.op == "call_module":
        return type(modules.get(str(node.target))) is torch.nn.ReLU
    if node.op == "call_function":
        return node.target in (torch.relu, torch.relu_, torch.nn.functional.relu) and not node.kwargs
    return node.op == "call_method" and node.target in ("relu", "relu_")


def fuse_conv_relu(module: torch.nn.Module) -> torch.nn.Module:
    """On CPU, run each convolution and its ReLU (or residual sum + ReLU) as one oneDNN call.

    Works on the torch.fx graph that :func:`fold_batch_norms` returns (identity layers are dropped first): a
    ``Conv2d`` whose only use is a ReLU, or an addition whose only use is a ReLU, becomes one
    :class:`_ConvReLU`. The result computes the same function (up to rounding: in bfloat16 the sum is rounded
    once instead of twice); anything else, or a torch without these kernels, is returned unchanged. The returned module
    shares its layers with ``module``.
    """
    import operator

    kernel = getattr(torch.ops.mkldnn, "_convolution_pointwise", None)
    if not isinstance(module, torch.fx.GraphModule) or kernel is None or "binary" not in kernel.overloads():
        return module
    fused = torch.fx.GraphModule(module, copy.deepcopy(module.graph))  # shares the layers, not the graph
    graph = fused.graph
    modules = dict(fused.named_modules())
    for node in list(
        graph.nodes
    ):  # identity layers (timm's drop_block and aa in eval) sit between conv and ReLU
        if node.op == "call_module" and type(modules.get(str(node.target))) is torch.nn.Identity:
            node.replace_all_uses_with(node.args[0])  # type: ignore[arg-type]
            graph.erase_node(node)
    count = 0
    for node in list(graph.nodes):
        conv = modules.get(str(node.target)) if node.op == "call_module" else None
        if type(conv) is not torch.nn.Conv2d or len(node.users) != 1:  # Conv2d subclasses pad in forward
            continue
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str) or node.kwargs:  # type: ignore[union-attr]
            continue
        user = next(iter(node.users))
        if _is_relu(user, modules):
            relu, inputs = user, (node.args[0],)
        elif (
            user.op == "call_function"
            and user.target in (operator.add, operator.iadd, torch.add)
            and len(user.args) == 2
            and not user.kwargs
            and len(user.users) == 1
            and _is_relu(next(iter(user.users)), modules)
        ):
            other = user.args[1] if user.args[0] is node else user.args[0]
            if not isinstance(other, torch.fx.Node):
                continue
            relu, inputs = next(iter(user.users)), (node.args[0], other)
        else:
            continue
        name = f"{str(node.target).replace('.', '_')}_relu"
        fused.add_submodule(name, _ConvReLU(conv))  # type: ignore[arg-type]
        with graph.inserting_after(relu):  # where every input is already computed
            new = graph.call_module(name, inputs)
        relu.replace_all_uses_with(new)
        for dead in (relu, user, node) if user is not relu else (relu, node):
            graph.erase_node(dead)
        count += 1
    graph.lint()
    fused.recompile()
    fused.delete_all_unused_submodules()
    log.debug("%d convolutions fused with their ReLUs", count)
    return fused


def optimize_for_inference(
    net: EmotionNet, device: torch.device, amp_dtype: torch.dtype | None
) -> EmotionNet:
    """Fold, fuse and lay out ``net`` (in place, in eval mode) for inference on ``device``.

    Args:
        net: the loaded network (its backbones are replaced by their optimised versions).
        device: where it runs.
        amp_dtype: the low-precision dtype it runs in (``None``: fp32). On a CPU the backbones then hold weights
            of this dtype (faster than autocast, which re-casts them on every call); fusion and heads stay in
            float32. On a GPU the caller runs it under autocast.

    Returns:
        ``net``, in channels-last memory format.
    """
    net.eval()
    # oneDNN's fused convolution kernels: CPU only, and in bfloat16 only where oneDNN supports it.
    fuse_relu = device.type == "cpu" and torch.backends.mkldnn.is_available()
    if amp_dtype is not None:
        fuse_relu = fuse_relu and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    for name in net.stream_names:
        backbone = fold_batch_norms(net.backbones[name], inplace=True)  # the loaded network is ours
        if fuse_relu:
            backbone = fuse_conv_relu(backbone)
        net.backbones[name] = backbone
    net = net.to(memory_format=torch.channels_last)
    if amp_dtype is not None and device.type == "cpu":
        net.backbones.to(amp_dtype)
    return net
