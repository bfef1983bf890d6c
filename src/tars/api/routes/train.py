from __future__ import annotations

from fastapi import APIRouter

from tars.api.deps import OperatorPrincipal, RuntimeDep
from tars.api.schemas import TrainIn, TrainOut
from tars.services.training import TrainingRequest, submit_training

router = APIRouter(prefix="/api/v1", tags=["training"])


@router.post("/train", response_model=TrainOut, responses={404: {"description": "unknown agent"}})
def train(body: TrainIn, runtime: RuntimeDep, principal: OperatorPrincipal) -> TrainOut:
    run = submit_training(
        runtime.sessions,
        runtime.queue,
        runtime.bus,
        TrainingRequest(
            agent_id=body.agent_id,
            episodes=body.episodes,
            environment=body.environment,
            hyperparameters=body.hyperparameters,
            seed=body.seed,
        ),
        evaluation_episodes=runtime.settings.evaluation_episodes,
        created_by=principal.user_id,
    )
    return TrainOut(run_id=run.id, status=run.status)
