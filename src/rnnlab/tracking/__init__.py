"""MLflow conventions: where runs go, what they are tagged with, what they carry."""
