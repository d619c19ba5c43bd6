"""Find the handler in the function's module (HANDLER_MODULE).

Either a `ModelHandler` (an instance named `handler`, or the module's one
subclass) or a plain python3-http module with `handle(event, context)`, which is
adapted here, once, into a ModelHandler (`PlainHandler`).
Used at start-up (server) and at build time (prepare).
"""
import importlib

from .model_handler import ModelHandler
from .plain_handler import PlainHandler


def load_handler(module_name: str):
    module = importlib.import_module(module_name)
    if isinstance(getattr(module, "handler", None), ModelHandler):
        return module.handler
    classes = [v for v in vars(module).values()
               if isinstance(v, type) and issubclass(v, ModelHandler) and v is not ModelHandler
               and v.__module__ == module.__name__]
    if len(classes) == 1:
        return classes[0]()
    if hasattr(module, "handle"):
        return PlainHandler(module)
    raise ImportError(f"{module_name} defines neither a ModelHandler subclass nor handle(event, context)")
