"""The scientists' page: search the catalog, see each file's default plot and its results
(a reconstructed slice, I(q), mu(E)), served beside the catalog and read through tiled's
HTTP API with the same API key rules. Plots by Plotly (its JavaScript, from the ``plotly``
package)."""
