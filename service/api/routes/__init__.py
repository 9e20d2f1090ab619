"""The API's routes, one module per concern; ``create_app`` includes every router listed here."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.routes import health, jobs, metrics, predict, v2

ROUTERS: tuple[APIRouter, ...] = (health.router, metrics.router, predict.router, jobs.router, v2.router)
