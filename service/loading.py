"""The one way to load the configured models, for the server and the command line alike."""

from PIL import Image

from models.quantize import quantize_int8
from service.engine import Engine
from service.jobs import AnswerJob, CaptionJob, EngineJob, LabelJob, run_jobs
from service.settings import Settings


def load_engine(settings: Settings, warm_up: bool = True) -> Engine:
    """Load `settings`' model directories, the captioner quantised if `settings.quantize`
    says so; raises `CheckpointError` naming what is wrong.

    The warm-up runs every loaded head once on a small grey image, so that a server's first
    request is not the slow one; a command that runs the model once anyway can skip it.
    """
    engine = Engine.from_dirs(settings.caption_model, settings.vqa_model, settings.torch_threads)
    if settings.quantize == "int8" and engine.captioner is not None:
        # The captioner only: VQA runs its layers once per question, not once per word.
        quantize_int8(engine.captioner.model)
    engine.domain_policy = settings.out_of_domain
    engine.labels_top_k = settings.labels_top_k
    if warm_up:
        run_jobs(engine, _warm_up_jobs(engine))
    return engine


def _warm_up_jobs(engine: Engine) -> list[EngineJob]:
    image = Image.new("RGB", (32, 32), (128, 128, 128))
    jobs: list[EngineJob] = []
    if engine.captioner is not None:
        jobs.append(CaptionJob(image, beam_size=2, max_length=2))
    if engine.vqa is not None:
        jobs.append(AnswerJob(image, ("what is this?",), top_k=1))
    if engine.labeller is not None:
        jobs.append(LabelJob(image, top_k=1))
    return jobs
