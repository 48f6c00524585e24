-- fail: select_star
SELECT p.* FROM pums AS p
