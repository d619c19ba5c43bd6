import sys
from pathlib import Path

# tests import `support.*`; the runtime under test is imported from the template
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "template" / "python3-http-torch"))
