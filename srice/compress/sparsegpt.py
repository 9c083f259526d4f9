"""SparseGPT (Frantar & Alistarh, 2023): prune and fix up the surviving weights in one pass.

For a linear layer with inputs X, it minimises ||W X - W' X||^2 under a sparsity constraint. Columns
are processed left to right in blocks; in each block the weights with the lowest saliency
w^2 / [H^-1]_jj^2 are pruned (the optimal-brain-surgeon cost), and the error each removal causes is
spread over the not-yet-processed columns through the inverse Hessian H = X X^T. That update is why
it beats Wanda at high sparsity: the remaining weights compensate for the removed ones.

Pure function: the Hessian comes from ``srice.compress.capture``. Sparsity is exact per block of
columns (``floor(rows * block_columns * sparsity)`` zeros each), or exact N:M.
"""

from __future__ import annotations

import torch

from srice.compress.masks import check_sparsity, parse_nm


def prune(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    sparsity: float,
    *,
    nm: tuple[int, int] | None = None,
    blocksize: int = 128,
    percdamp: float = 0.01,
) -> torch.Tensor:
    """The pruned and updated weight (a new tensor, same dtype). ``hessian`` is X X^T (any scale)."""
    sparsity = check_sparsity(sparsity)
    rows, cols = weight.shape
    if hessian.shape != (cols, cols):
        raise ValueError(f"hessian must be {cols}x{cols}, got {tuple(hessian.shape)}")
    if nm:
        parse_nm(f"{nm[0]}:{nm[1]}")
        if cols % nm[1]:
            from srice.errors import InputError

            raise InputError(f"N:M with M={nm[1]} needs the input width ({cols}) to be a multiple of M")
        if blocksize % nm[1]:
            blocksize = nm[1] * max(1, blocksize // nm[1])
    W = weight.detach().clone().double()
    H = hessian.detach().clone().double()
    dead = torch.diag(H) == 0  # inputs that never fired: their weights cannot matter
    H[dead, dead] = 1
    W[:, dead] = 0
    H += percdamp * torch.mean(torch.diag(H)) * torch.eye(cols, dtype=H.dtype, device=H.device)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    # the factorisation needs float64; the column sweep does not (as in the reference code)
    W, Hinv = W.float(), Hinv.float()

    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        d = torch.diag(Hinv1)
        pruned = torch.zeros_like(W1, dtype=torch.bool)
        if nm is None:
            k = int(W1.numel() * sparsity)
            if k:
                saliency = (W1**2 / d.reshape(1, -1) ** 2).flatten()
                pruned.view(-1)[torch.sort(saliency, stable=True).indices[:k]] = True
        for i in range(count):
            if nm is not None and i % nm[1] == 0:
                n, m = nm
                saliency = W1[:, i : i + m] ** 2 / d[i : i + m].reshape(1, -1) ** 2
                low = torch.sort(saliency, dim=1, stable=True).indices[:, : m - n]
                pruned[:, i : i + m].scatter_(1, low, True)
            w = W1[:, i]
            q = torch.where(pruned[:, i], torch.zeros_like(w), w)
            Q1[:, i] = q
            err = (w - q) / Hinv1[i, i]
            W1[:, i:] -= err.unsqueeze(1) @ Hinv1[i, i:].unsqueeze(0)
            Err1[:, i] = err
        W[:, i1:i2] = Q1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    return W.to(weight.dtype)
