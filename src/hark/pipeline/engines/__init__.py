"""Speech-recognition engines behind one interface (`base.Engine`), chosen by model name."""
