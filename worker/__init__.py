"""The worker side of textgenshap: the Shapley core, the inference engine, the job loop."""
