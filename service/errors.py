"""Typed errors of the service, each with a stable snake_case `code` that clients can switch on.

The `message` is for people and names what is wrong. Extra machine-readable fields (the limit
that was hit, the offending field) travel in `details()`. How an error reaches a client (its
HTTP status, its headers) is the API's business, not the service's.
"""


class GlimpseError(Exception):
    """Base of the errors raised on purpose; anything else reaching the API is a bug."""

    code: str = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def details(self) -> dict[str, object]:
        """Extra fields next to `code` and `message` when the error is reported."""
        return {}


class ImageTooLarge(GlimpseError):
    code = "image_too_large"

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"image is larger than the limit of {max_bytes} bytes")
        self.max_bytes = max_bytes

    def details(self) -> dict[str, object]:
        return {"max_bytes": self.max_bytes}


class ImageTooManyPixels(GlimpseError):
    """Decompression-bomb guard: the header declares more pixels than we agree to decode."""

    code = "image_too_many_pixels"

    def __init__(
        self, max_pixels: int, width: int | None = None, height: int | None = None
    ) -> None:
        size = f"{width}x{height} pixels" if width and height else "too many pixels"
        super().__init__(f"image has {size}, over the limit of {max_pixels} pixels")
        self.max_pixels = max_pixels
        self.width = width
        self.height = height

    def details(self) -> dict[str, object]:
        return {"max_pixels": self.max_pixels, "width": self.width, "height": self.height}


class UnsupportedImageType(GlimpseError):
    code = "unsupported_image_type"

    def __init__(self, message: str, allowed: frozenset[str] = frozenset()) -> None:
        super().__init__(message)
        self.allowed = allowed

    def details(self) -> dict[str, object]:
        return {"allowed": sorted(self.allowed)}


class InvalidImage(GlimpseError):
    """The bytes claim a supported format but cannot be decoded (empty, truncated, corrupt)."""

    code = "invalid_image"


class InvalidField(GlimpseError):
    code = "invalid_field"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field

    def details(self) -> dict[str, object]:
        return {"field": self.field}


class Busy(GlimpseError):
    """The work queue is full: shed load now instead of letting latency pile up."""

    code = "busy"

    def __init__(self, retry_after: int, message: str = "server is busy, retry later") -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def details(self) -> dict[str, object]:
        return {"retry_after": self.retry_after}


class NotReady(GlimpseError):
    code = "not_ready"

    def __init__(self, message: str = "models are still loading") -> None:
        super().__init__(message)


class OutOfDomain(GlimpseError):
    """The image lies outside what the model was trained on and the policy is to refuse."""

    code = "out_of_domain"

    def __init__(self, model: str, trained_on: str | None, score: float, threshold: float) -> None:
        knows = f" (it knows {trained_on})" if trained_on else ""
        super().__init__(
            f"the image is outside the domain of {model}{knows}: its distance from the "
            f"training images is {score:g}, over the threshold {threshold:g}; nothing was decoded"
        )
        self.score, self.threshold = score, threshold

    def details(self) -> dict[str, object]:
        return {"score": self.score, "threshold": self.threshold}


class LabelsUnavailable(GlimpseError):
    """No loaded encoder has an ImageNet head, so there are no labels to give."""

    code = "labels_unavailable"
