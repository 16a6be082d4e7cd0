"""The Streamlit web app's pages: a thin shell over ingest, kb, assist and eval."""
