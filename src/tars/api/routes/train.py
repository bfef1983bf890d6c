from __future__ import annotations

from fastapi import APIRouter

from tars.api.deps import OperatorPrincipal, RuntimeDep
from tars.api.errors import UNREADABLE_BODY
from tars.api.schemas import EvaluateIn, TrainIn, TrainOut
from tars.services.training import EvaluationRequest, TrainingRequest

router = APIRouter(prefix="/api/v1", tags=["training"])


@router.post("/train", response_model=TrainOut, responses={**UNREADABLE_BODY, 404: {"description": "unknown agent"}})
def train(body: TrainIn, runtime: RuntimeDep, principal: OperatorPrincipal) -> TrainOut:
    run = runtime.training.train(
        TrainingRequest(
            agent_id=body.agent_id,
            episodes=body.episodes,
            timesteps=body.timesteps,
            environment=body.environment,
            hyperparameters=body.hyperparameters,
            seed=body.seed,
            from_run=body.from_run,
        ),
        by=principal,
    )
    return TrainOut(run_id=run.run_id, status=run.status)


@router.post("/evaluate", response_model=TrainOut, responses={**UNREADABLE_BODY, 404: {"description": "unknown agent"}})
def evaluate(body: EvaluateIn, runtime: RuntimeDep, principal: OperatorPrincipal) -> TrainOut:
    run = runtime.training.evaluate(
        EvaluationRequest(episodes=body.episodes, run_id=body.run_id, agent_id=body.agent_id, seed=body.seed),
        by=principal,
    )
    return TrainOut(run_id=run.run_id, status=run.status)
