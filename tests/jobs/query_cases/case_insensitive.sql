-- ok
select RACE, count(*) AS n from PUMS p group by P.Race
