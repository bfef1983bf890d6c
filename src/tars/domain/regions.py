"""The regions T.A.R.S. runs and evaluates in: declared once, as the type that names them."""

from __future__ import annotations

from typing import Literal, get_args

Region = Literal["us-west-2", "us-east-1", "eu-west-1", "ap-southeast-1"]
REGIONS: tuple[str, ...] = get_args(Region)
