-- fail: reserved_name
SELECT COUNT(*) AS n FROM pums AS __p
