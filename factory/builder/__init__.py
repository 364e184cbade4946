"""The build: rounds of prompts -> generators -> parse -> filters until each bucket has its target."""
