"""The OCR inference service: a FastAPI app over PP-OCR ONNX models, and a worker for async jobs."""

__version__ = "0.1.0"
