"""The module `celery -A lakehouse.app.celery_app worker` loads (`lakehouse worker` runs that command): the Celery
app of this deployment's settings (LAKEHOUSE_CELERY_BROKER, LAKEHOUSE_CELERY_QUEUE), with dagster-celery's step task."""

from lakehouse.app.workers import make_worker_app
from lakehouse.settings import Settings

app = make_worker_app(Settings.from_env())
