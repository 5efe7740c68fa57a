"""Loading the N3Net authors' released Gaussian-denoising checkpoints into :class:`N3Net`.

Their files (``torch.save`` of ``{"net": state_dict, "epoch": …}``) name the DnCNN stages
``blocks.{i}`` and the N³ blocks ``nls.{i}``. The key schema is in
``shared/reference/official_n3net_sigma25_state_dict_keys.txt``:

==============================================  =====================================
theirs                                          ours
==============================================  =====================================
``blocks.{i}.conv1.*``                          ``stages.{i}.head.*``
``blocks.{i}.layer1.{j}.*``                     ``stages.{i}.body.{j}.*``
``blocks.{i}.conv2.*``                          ``stages.{i}.tail.*``
``blocks.{i}.bn1.*``                            (unused in their forward pass: dropped)
``nls.{i}.embedcnn.*``                          ``n3blocks.{i}.embedding.*``
``nls.{i}.tempcnn.*``                           ``n3blocks.{i}.temperature_net.*``
``nls.{i}.n3aggregation.aggregation.nnn.bn.*``  ``n3blocks.{i}.score_norm.*``
==============================================  =====================================

There is one loader, :meth:`N3Net.from_official_checkpoint
<n3seq_image.n3net.N3Net.from_official_checkpoint>`; the reading and key mapping it uses live in
``n3seq_image._official_format`` (no model code, so the model module can import it without a
cycle), and this module gives them their public names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from torch import Tensor

from n3seq_image._official_format import (
    convert_state_dict,
    flush_subnormals,
    official_key,
    read_state_dict,
)
from n3seq_image.n3net import N3Net

__all__ = [
    "convert_official_state_dict",
    "flush_subnormals",
    "load_official_checkpoint",
    "official_key",
    "read_state_dict",
]


def convert_official_state_dict(
    state: Mapping[str, Tensor], model: N3Net | None = None
) -> dict[str, Tensor]:
    """Maps their state dict onto ours, checking that both match exactly.

    Args:
        state: their ``state_dict`` (the ``"net"`` entry of a checkpoint).
        model: the model to fill (default: ``N3Net(placement="official")``).

    Returns:
        A complete state dict for ``model`` (subnormals flushed to zero; BatchNorm
        ``num_batches_tracked`` counters, absent from their files, taken from ``model``).

    Raises:
        ValueError: naming every unexpected key (outside their schema or without a
            counterpart in ``model``), every missing key and every shape mismatch.
    """
    return convert_state_dict(state, model or N3Net(placement="official"))


def load_official_checkpoint(path: str | os.PathLike[str]) -> N3Net:
    """Reads one of the authors' checkpoints; the same as :meth:`N3Net.from_official_checkpoint
    <n3seq_image.n3net.N3Net.from_official_checkpoint>`, which documents it."""
    return N3Net.from_official_checkpoint(path)
