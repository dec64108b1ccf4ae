from django.http import HttpRequest, JsonResponse


def healthz(request: HttpRequest) -> JsonResponse:
    """Process liveness only: answers without touching the database or Redis."""
    return JsonResponse({"status": "ok"})
