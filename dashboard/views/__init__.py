"""The dashboard's pages, one module and one ``render`` function per page.

Each module is also a Streamlit page script: ``st.Page`` runs the file, whose ``__main__``
guard calls ``render()``. Importing a module runs nothing.
"""
