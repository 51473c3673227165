"""kv-reco: thin commands over the layers below."""
