-- ok
SELECT COUNT(*) AS n FROM pums AS main_pums
