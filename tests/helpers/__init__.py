"""Plain helpers shared by the tests (not test modules): importable as ``helpers.*`` because
pytest.ini puts ``tests`` on ``pythonpath``. Tests reach most of them through the fixtures of
``tests/conftest.py``; a module-level helper of a test file may import them directly."""
