"""The data layer: where lenslib reads and writes the survey's files.

- ``storage``     one way to read ``s3://`` URIs (boto3) and local mirrors; sync, cache, listing
- ``cutouts``     DR10 ``.npz`` cutouts: read, check, write, batch loading, a torch Dataset
- ``processes``   many local cutouts decoded on worker processes (what batch loading uses for local files)
- ``manifests``   the parquet manifests of cutouts (schema, validation, Table 1 composition)
- ``catalogues``  lens catalogues (DESI candidates, lenscat) → positives with tiers
- ``spatial``     HEALPix pixels, the SHA-256 train/val/test split, exclusion radii
- ``coadd``       DR10 coadd bricks (per-band image and invvar FITS) → cutouts
- ``extract``     cutouts of many positions from the coadd tiles, one task per brick (local or Dask)
- ``plots``       figures of the data section

Modules are imported on demand (``from lenslib.data import cutouts``).
"""
