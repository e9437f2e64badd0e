"""MinAtar frames (``render_mode="rgb_array"``) in the ``minatar`` package's colours.

The package's ``render()`` (minatar/gym.py BaseEnv, and Environment.display_state) colours each
cell by the highest channel set in it, from ``seaborn.color_palette("cubehelix", C)`` with black
for an empty cell. Those palettes are stored here (seaborn 0.13's values, exactly as floats;
tests/envs/test_minatar.py checks them against seaborn), so rendering needs neither seaborn nor
matplotlib.
"""

from __future__ import annotations

import numpy as np
import torch

BLACK = (0.0, 0.0, 0.0)

# seaborn.color_palette("cubehelix", C) for the games' channel counts C, black prepended.
PALETTES: dict[int, tuple[tuple[float, float, float], ...]] = {
    4: (BLACK,
        (0.08605633600581403, 0.23824692404212, 0.30561236308077167),
        (0.32927729263408284, 0.4762845556584382, 0.1837155549758328),
        (0.8146245329198283, 0.49548316572322215, 0.5752525936416857),
        (0.7587183008012618, 0.7922069335474338, 0.9543861221913403)),
    6: (BLACK,
        (0.10231025194333628, 0.13952898866828906, 0.2560120319409181),
        (0.10594361078604106, 0.3809739011595331, 0.27015111282899046),
        (0.4106130272672762, 0.48044780541672255, 0.1891154277778484),
        (0.7829183382530567, 0.48158303462490826, 0.48672451968362596),
        (0.8046168329276406, 0.6365733569301846, 0.8796578402926125),
        (0.7775608374378459, 0.8840392521212448, 0.9452007992345052)),
    7: (BLACK,
        (0.10419418740482515, 0.11632019220053316, 0.2327552016195138),
        (0.08523511613408935, 0.32661779003565533, 0.2973201282529313),
        (0.26538761550634205, 0.4675654910052002, 0.1908220644759285),
        (0.6328422475018423, 0.4747981096220677, 0.29070209208025455),
        (0.8306875710682655, 0.5175161303658079, 0.6628221028832032),
        (0.7779565181455343, 0.7069421942599752, 0.9314406084043191),
        (0.7964528047840354, 0.908668973545918, 0.9398253500983916)),
    10: (BLACK,
         (0.09854228363950114, 0.07115215572295082, 0.16957891809124037),
         (0.09159726558869188, 0.20394337960213008, 0.29623965888210324),
         (0.09406611799930162, 0.3578871412608098, 0.2837709711722866),
         (0.23627685553553793, 0.46114369021199075, 0.19770731888985724),
         (0.49498740849493095, 0.4799034869159042, 0.21147789468974837),
         (0.7354526513473981, 0.4748861903571046, 0.40254094042448907),
         (0.8325928529853291, 0.5253446757844744, 0.6869376931865354),
         (0.7936920632275369, 0.6641337211433709, 0.9042311843062529),
         (0.7588424692372241, 0.8253990353420474, 0.9542699331220588),
         (0.8385645211683802, 0.9411869386771845, 0.9357655639413166)),
}  # fmt: skip


def frames(obs: torch.Tensor) -> tuple[np.ndarray, ...]:
    """One uint8 ``[10, 10, 3]`` frame per env of the observations ``obs`` (bool ``[N, 10, 10,
    C]``): each cell the package's colour of its highest channel set (black if none), as
    ``round(255 * colour)``. The package's own ``render()`` returns those colours as floats in
    [0, 1]."""
    channels = obs.shape[-1]
    table = torch.tensor(PALETTES[channels], dtype=torch.float64).mul(255).round().to(torch.uint8)
    top = (obs.cpu().to(torch.int64) * torch.arange(1, channels + 1)).amax(-1)  # the package's numerical_state
    return tuple(table[top].numpy())
