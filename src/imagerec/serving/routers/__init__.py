"""One ``APIRouter`` per concern; only these turn domain errors into HTTP errors."""
