from django.apps import AppConfig


class ProcessingConfig(AppConfig):
    name = "processing"
    verbose_name = "Feeds and posts"

    def ready(self) -> None:
        from processing import signals  # noqa: F401
