"""Publishing a finished run: the dataset card (card.py) and the push to the Hugging Face Hub (hub.py).

Nothing is re-exported here, so importing the package stays light: `huggingface_hub` and `datasets`
load only when `factory.publish.hub.push_run` runs.
"""
